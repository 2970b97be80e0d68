package controller

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/zapr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
	"github.com/keywarden/keywarden/internal/revio/reviotest"
	"github.com/keywarden/keywarden/internal/testenv"
)

// The suite runs a real kube-apiserver and etcd (envtest) with the real CRDs,
// both reconcilers in one manager, a fake clock, and the in-memory Reevit and
// Rev.io simulators on loopback. Every test works in its own namespace.
var (
	cfg       *rest.Config
	k8s       client.Client
	scheme    = runtime.NewScheme()
	clk       = clocktesting.NewFakeClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	reevitSim *reevittest.Server
	revioSim  *reviotest.Server
	logBuf    = &syncBuffer{}
	crashMu   sync.Mutex
	crashFn   func(step string) bool
)

// syncBuffer collects the manager's log output for the secret-hygiene checks.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Sync() error { return nil }

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds the control plane first")
		os.Exit(1)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(logBuf), zapcore.DebugLevel)
	logger := zapr.NewLogger(zap.New(core))
	logf.SetLogger(logger)
	ctrl.SetLogger(logger)

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		os.Exit(1)
	}
	kcmDir, err := os.MkdirTemp("", "keywarden-kcm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = env.Stop()
		os.Exit(1)
	}
	kcm, err := testenv.StartControllerManager(cfg, kcmDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start kube-controller-manager:", err)
		_ = env.Stop()
		os.Exit(1)
	}
	code := run(m)
	_ = kcm.Stop(10 * time.Second)
	_ = os.RemoveAll(kcmDir)
	_ = env.Stop()
	os.Exit(code)
}

func run(m *testing.M) int {
	var err error
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reevitSim = reevittest.NewServer(reevittest.WithClock(clk))
	defer reevitSim.Close()
	revioSim = reviotest.NewServer(reviotest.WithClock(clk))
	defer revioSim.Close()
	defer startHostileFront().Close()

	if err := startManager(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	stopManager()
	return code
}

// clusterNS is the manager's cluster-resource namespace in the tests.
const clusterNS = "keywarden-system"

var (
	stopManager func()
	// optionsHook, when set, changes the Options of the managers started
	// next (a test that needs a flag the others run without).
	optionsHook func(*Options)
	// metricsAddr is where the test manager serves /metrics.
	metricsAddr string
)

// startManager starts a manager with both reconcilers, as cmd/manager does,
// but with the fake clock, http:// allowed for the simulators it lists in
// AllowedEndpoints, and a crash hook.
func startManager() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsAddr = l.Addr().String()
	_ = l.Close()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: metricsAddr},
		Logger:  ctrl.Log,
		Cache:   cache.Options{DefaultTransform: TrimForCache},
		Client:  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// Several managers start and stop in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	opts := Options{
		Audit: auditLog,
		Clock: clk, AllowHTTP: true, MaxConcurrentReconciles: 4, ClusterResourceNamespace: clusterNS,
		// The simulators and the hostile proxies only: --allow-http-endpoints
		// lets no other loopback listener through.
		AllowedEndpoints:   []string{reevitSim.URL, revioSim.URL, hostileFront.URL},
		DriftCheckInterval: 10 * time.Minute, RolloutWaitLimit: 2 * time.Minute, RestartCoalesceWindow: restartWindow,
		Jitter: func() float64 { return 0 },
		crashAt: func(step string) bool {
			crashMu.Lock()
			defer crashMu.Unlock()
			return crashFn != nil && crashFn(step)
		},
	}
	if optionsHook != nil {
		optionsHook(&opts)
	}
	if err := Setup(mgr, opts); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		cancel()
		return fmt.Errorf("cache did not sync")
	}
	stopManager = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped with an error:", err)
		}
	}
	return nil
}

// restartManager stops the running manager and starts a new one, as a
// process restart would: every in-memory state is gone.
func restartManager(t *testing.T) {
	t.Helper()
	stopManager()
	if err := startManager(); err != nil {
		t.Fatalf("restart manager: %v", err)
	}
}

// setCrash makes the ApiKey reconciler stop at the named step boundary (as
// if the process died there) while fn returns true; nil clears it.
func setCrash(fn func(step string) bool) {
	crashMu.Lock()
	defer crashMu.Unlock()
	crashFn = fn
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kw-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// eventsIn returns every event recorded in a namespace.
// updateRetrying reads the object of obj's kind, namespace and name into a
// fresh copy of obj, applies mutate and updates it; on a conflict (with a
// reconciler's status write, say) it reads again and retries. Any other
// error fails the test.
func updateRetrying[T client.Object](t *testing.T, obj T, mutate func(T)) {
	t.Helper()
	NewWithT(t).Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := obj.DeepCopyObject().(T)
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		mutate(cur)
		return k8s.Update(context.Background(), cur)
	})).To(Succeed())
}

func eventsIn(t *testing.T, ns string) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	return list.Items
}

// assertNoSecretsLeaked scans the manager log and every event and status in
// ns for the given secret values.
func assertNoSecretsLeaked(t *testing.T, ns string, secrets ...string) {
	t.Helper()
	g := NewWithT(t)
	logs := logBuf.String()
	var texts []string
	for _, e := range eventsIn(t, ns) {
		texts = append(texts, e.Note, e.Reason)
	}
	aks := &v1alpha1.ApiKeyList{}
	g.Expect(k8s.List(context.Background(), aks, client.InNamespace(ns))).To(Succeed())
	for _, a := range aks.Items {
		texts = append(texts, fmt.Sprintf("%+v", a.Status))
	}
	rts := &v1alpha1.RevioTokenList{}
	g.Expect(k8s.List(context.Background(), rts, client.InNamespace(ns))).To(Succeed())
	for _, r := range rts.Items {
		texts = append(texts, fmt.Sprintf("%+v", r.Status))
	}
	all := logs + "\n" + strings.Join(texts, "\n")
	for _, s := range secrets {
		if s == "" {
			continue
		}
		g.Expect(strings.Contains(all, s)).To(BeFalse(), "a secret value appeared in logs, events or status")
	}
}
