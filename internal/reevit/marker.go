package reevit

import (
	"fmt"
	"regexp"
	"strconv"
)

// Keywarden appends an ownership marker to the name of every key it creates,
// [kw:<object uid>:<creation number>]: crash recovery, the drift sweep and
// deletion find the keys of an object by it.
var markerRE = regexp.MustCompile(`\[kw:([0-9a-fA-F-]{36}):([0-9]+)\]$`)

// Marker is the ownership marker for creation gen of the object uid.
func Marker(uid string, gen int64) string { return fmt.Sprintf("[kw:%s:%d]", uid, gen) }

// ParseMarker returns the object UID and creation number a key name carries.
func ParseMarker(name string) (uid string, gen int64, ok bool) {
	m := markerRE.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	g, err := strconv.ParseInt(m[2], 10, 64)
	return m[1], g, err == nil
}
