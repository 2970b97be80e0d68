package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// KubectlResult is what a kubectl run printed.
type KubectlResult struct {
	Stdout, Stderr []byte
}

// Kubectl runs kubectl against the Env's API server as the user of
// kubeconfig, with stdin as its input (nil: none). Credentials go through
// stdin or files, never through arguments, where ps would show them. The
// error carries kubectl's stderr.
func (e *Env) Kubectl(ctx context.Context, kubeconfig string, stdin []byte, args ...string) (KubectlResult, error) {
	full := append([]string{"--kubeconfig=" + kubeconfig, "--cache-dir=" + filepath.Join(e.Dir, "kube-cache")}, args...)
	return e.kubectl(ctx, stdin, full...)
}

// AdminKubectl runs kubectl as the cluster administrator.
func (e *Env) AdminKubectl(ctx context.Context, stdin []byte, args ...string) (KubectlResult, error) {
	return e.Kubectl(ctx, e.AdminKubeconfig, stdin, args...)
}

// ManagerKubectl runs kubectl as the manager's ServiceAccount.
func (e *Env) ManagerKubectl(ctx context.Context, stdin []byte, args ...string) (KubectlResult, error) {
	return e.Kubectl(ctx, e.ManagerKubeconfig, stdin, args...)
}

func (e *Env) kubectl(ctx context.Context, stdin []byte, args ...string) (KubectlResult, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Dir = e.RepoRoot
	cmd.Env = environ()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := KubectlResult{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if err != nil {
		return res, fmt.Errorf("kubectl %s: %w: %s", redactArgs(args), err, strings.TrimSpace(errb.String()))
	}
	return res, nil
}

// redactArgs drops the kubeconfig and cache flags from error messages.
func redactArgs(args []string) string {
	var keep []string
	for _, a := range args {
		if strings.HasPrefix(a, "--kubeconfig=") || strings.HasPrefix(a, "--cache-dir=") {
			continue
		}
		keep = append(keep, a)
	}
	return strings.Join(keep, " ")
}

// Kustomize renders a kustomization directory relative to the repository
// root with `kubectl kustomize`.
func (e *Env) Kustomize(ctx context.Context, dir string) ([]byte, error) {
	res, err := e.kubectl(ctx, nil, "kustomize", filepath.Join(e.RepoRoot, dir))
	return res.Stdout, err
}

// RenderInstall renders config/default into its objects.
func (e *Env) RenderInstall(ctx context.Context) ([]*unstructured.Unstructured, error) {
	b, err := e.Kustomize(ctx, "config/default")
	if err != nil {
		return nil, err
	}
	return SplitDocuments(b)
}

// Install applies config/default's kustomize output with kubectl (server
// side) as the administrator, without the Deployment (there is no kubelet
// to run it: the manager runs as a process instead), and waits for the
// CRDs to be established. It returns what it applied.
func (e *Env) Install(ctx context.Context) ([]*unstructured.Unstructured, error) {
	objs, err := e.RenderInstall(ctx)
	if err != nil {
		return nil, err
	}
	objs = WithoutKinds(objs, "Deployment")
	b, err := JoinDocuments(objs)
	if err != nil {
		return nil, err
	}
	e.logf("installing config/default with kubectl (%d objects, without the Deployment)", len(objs))
	if _, err := e.AdminKubectl(ctx, b, "apply", "--server-side", "-f", "-"); err != nil {
		return nil, err
	}
	var crds []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, "crd/"+o.GetName())
		}
	}
	if len(crds) == 0 {
		return nil, errors.New("config/default renders no CustomResourceDefinition")
	}
	args := append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, crds...)
	if _, err := e.AdminKubectl(ctx, nil, args...); err != nil {
		return nil, err
	}
	return objs, nil
}

// SplitDocuments parses a multi-document YAML stream, skipping empty
// documents.
func SplitDocuments(b []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split YAML: %w", err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("parse YAML document: %w", err)
		}
		if len(bytes.TrimSpace(j)) == 0 || string(bytes.TrimSpace(j)) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("parse object: %w", err)
		}
		out = append(out, u)
	}
}

// JoinDocuments writes objects as one YAML stream.
func JoinDocuments(objs []*unstructured.Unstructured) ([]byte, error) {
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// WithoutKinds returns objs without the objects of the given kinds.
func WithoutKinds(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
next:
	for _, o := range objs {
		for _, k := range kinds {
			if o.GetKind() == k {
				continue next
			}
		}
		out = append(out, o)
	}
	return out
}

// Find returns the object of kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}
