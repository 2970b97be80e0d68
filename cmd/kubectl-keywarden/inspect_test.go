package main

import (
	"os"
	"strings"
	"testing"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// inspect with anything but "secret" fails and says what to type, instead
// of printing help and exiting 0.
func TestInspectUnknownKindFails(t *testing.T) {
	c := newFake()
	for args, want := range map[string]string{
		"inspect apikey x": `cannot inspect "apikey": only secrets`,
		"inspect":          "inspect what?",
	} {
		_, _, err := run(t, c, "", strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", args, err, want)
		}
	}
}

// rotate --wait on an ApiKey never issued says the key was issued, not that
// "key - (-)" was replaced.
func TestApiKeyResultWithoutPreviousKey(t *testing.T) {
	before := &v1alpha1.ApiKey{}
	after := &v1alpha1.ApiKey{Status: v1alpha1.ApiKeyStatus{KeyID: "key_1", KeyPrefix: "pfk_test_ab12"}}
	if got := apiKeyResult(before, after, testNow); got != "key key_1 (pfk_test_ab12) issued, rotations 0" {
		t.Errorf("never issued: %q", got)
	}
	before.Status = v1alpha1.ApiKeyStatus{KeyID: "key_0", KeyPrefix: "pfk_test_zz99"}
	after.Status.Rotations = 1
	if got := apiKeyResult(before, after, testNow); got != "key key_0 (pfk_test_zz99) replaced by key_1 (pfk_test_ab12), rotations 1" {
		t.Errorf("rotated: %q", got)
	}
}

// --as and --as-group impersonate, as kubectl's flags do.
func TestImpersonationFlags(t *testing.T) {
	kc := t.TempDir() + "/kubeconfig"
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &options{}
	root := newRootCommand(o)
	if err := root.ParseFlags([]string{"--kubeconfig", kc, "--as", "alice", "--as-group", "team-a", "--as-group", "team-b"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := o.clientConfig().ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Impersonate.UserName != "alice" || strings.Join(cfg.Impersonate.Groups, ",") != "team-a,team-b" {
		t.Fatalf("impersonation: %+v", cfg.Impersonate)
	}
}
