// Command kubectl-keywarden is Keywarden's kubectl plugin: with the binary
// on PATH, `kubectl keywarden status apikey/NAME` shows what an ApiKey, a
// RevioToken or an issuer is doing, rotate, refresh and compromised ask the
// manager for a new credential through the annotations it acts on, and
// inspect secret tells what a Secret holds (and which issuers name it)
// without ever printing a credential.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// fieldManager names the plugin in managedFields of what it patches.
const fieldManager = "kubectl-keywarden"

// defaultClusterResourceNamespace is the manager's default
// --cluster-resource-namespace (its own namespace in the standard install).
const defaultClusterResourceNamespace = "keywarden-system"

func main() { os.Exit(runMain()) }

func runMain() int {
	// controller-runtime's client would otherwise warn that no logger is set.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := &options{in: os.Stdin, out: os.Stdout, errOut: os.Stderr, now: time.Now}
	if err := newRootCommand(o).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// options are the global flags and the plugin's doors to the world; tests
// replace in, out, now and client.
type options struct {
	kubeconfig string
	context    string
	namespace  string
	// as and asGroups impersonate a user, as kubectl --as and --as-group.
	as       string
	asGroups []string
	// clusterResourceNamespace is the manager's --cluster-resource-namespace:
	// where the credential Secrets of cluster issuers live.
	clusterResourceNamespace string

	in          io.Reader
	out, errOut io.Writer
	now         func() time.Time
	// client, when set, is used instead of one built from the kubeconfig,
	// and defaultNamespace is then the namespace of the "current context".
	client           client.Client
	defaultNamespace string
}

func newRootCommand(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-keywarden",
		Short: "Look at and act on Keywarden's ApiKeys, RevioTokens and issuers",
		Long: `kubectl-keywarden shows the state of Keywarden's ApiKeys (short name ak),
RevioTokens (rt) and issuers (ReevitIssuer ri, ClusterReevitIssuer cri,
RevioIssuer rvi, ClusterRevioIssuer crvi), asks the manager to rotate, refresh
or replace a compromised credential, and inspects the Secrets Keywarden writes
and the issuers' credential Secrets. It never prints a key or a token.

Installed on PATH as kubectl-keywarden, it runs as "kubectl keywarden".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(o.in)
	root.SetOut(o.out)
	root.SetErr(o.errOut)
	f := root.PersistentFlags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.context, "context", "", "the kubeconfig context to use")
	f.StringVarP(&o.namespace, "namespace", "n", "", "the namespace (default: the context's namespace)")
	f.StringVar(&o.as, "as", "", "username to impersonate for the operation, as kubectl --as (see what a team may do)")
	f.StringArrayVar(&o.asGroups, "as-group", nil, "group to impersonate for the operation, as kubectl --as-group (repeatable)")
	f.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", defaultClusterResourceNamespace,
		"the manager's --cluster-resource-namespace, where the credential Secrets of ClusterReevitIssuers and ClusterRevioIssuers live")
	root.AddCommand(
		newStatusCommand(o),
		newRotateCommand(o),
		newRefreshCommand(o),
		newCompromisedCommand(o),
		newInspectCommand(o),
		newReportCommand(o),
		newVersionCommand(o),
	)
	return root
}

// scheme knows the Kubernetes types and Keywarden's.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// clientConfig is the kubeconfig as the global flags shape it: the file, the
// context and whom to impersonate.
func (o *options) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	overrides.AuthInfo.Impersonate = o.as
	overrides.AuthInfo.ImpersonateGroups = o.asGroups
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// connect returns a client for the kubeconfig flags and the namespace the
// command works in.
func (o *options) connect() (client.Client, string, error) {
	if o.client != nil {
		ns := o.namespace
		if ns == "" {
			ns = o.defaultNamespace
		}
		return o.client, ns, nil
	}
	cc := o.clientConfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-keywarden/" + version
	ns := o.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, "", fmt.Errorf("kubeconfig namespace: %w", err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, "", fmt.Errorf("client: %w", err)
	}
	return c, ns, nil
}
