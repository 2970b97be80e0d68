package docs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// TestResourcesListsStatusFields: every top-level status field kubectl
// describe shows for an ApiKey, a RevioToken or an issuer is named in
// docs/resources.md, as `field`.
func TestResourcesListsStatusFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "docs", "resources.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, st := range []any{v1alpha1.ApiKeyStatus{}, v1alpha1.RevioTokenStatus{}, v1alpha1.IssuerStatus{}} {
		typ := reflect.TypeOf(st)
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(doc, "`"+name+"`") && !strings.Contains(doc, "`status."+name) {
				t.Errorf("docs/resources.md does not list %s's status field %s", typ.Name(), name)
			}
		}
	}
}
