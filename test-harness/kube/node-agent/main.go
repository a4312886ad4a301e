// Command node-agent is a TEST-ONLY stand-in for a kubelet. It registers one Node, keeps it Ready,
// and runs the pods bound to it as host processes: no images, no containers, no isolation. Each
// pod gets a loopback address of its own (127.N.x.y) as its pod IP. See ../README.md for the
// contract a test can rely on.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

type config struct {
	kubeconfig     string
	nodeName       string
	rootDir        string
	podNet         string
	podNetLocks    string
	listenAddr     string
	cpu            string
	memory         string
	maxPods        int
	runID          string
	maxGrace       time.Duration
	heartbeat      time.Duration
	kubeletVersion string
}

func main() {
	var c config
	flag.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (required)")
	flag.StringVar(&c.nodeName, "node-name", "af-test-node", "name of the Node to register")
	flag.StringVar(&c.rootDir, "root-dir", "", "directory for pod directories, logs and state (required)")
	flag.StringVar(&c.podNet, "pod-net", "auto", "pod IP range 127.N.0.0/16 as N, or 'auto': the first N in 77..126 not locked by another agent")
	flag.StringVar(&c.podNetLocks, "pod-net-lock-dir", "/tmp/af-kube-podnets", "where agents lock the pod ranges they use")
	flag.StringVar(&c.listenAddr, "listen", "127.0.0.1:0", "address of the HTTPS endpoint serving container logs (port 0: any free port)")
	flag.StringVar(&c.cpu, "cpu", "8", "cpu capacity of the node")
	flag.StringVar(&c.memory, "memory", "16Gi", "memory capacity of the node")
	flag.IntVar(&c.maxPods, "pods", 110, "pod capacity of the node")
	flag.StringVar(&c.runID, "run-id", os.Getenv("AF_KUBE_RUN_ID"), "marker put in every pod process's environment as AF_KUBE_RUN_ID (default: $AF_KUBE_RUN_ID)")
	flag.DurationVar(&c.maxGrace, "max-grace", 10*time.Second, "cap on a deleted pod's termination grace period")
	flag.DurationVar(&c.heartbeat, "heartbeat", 10*time.Second, "node status and lease renewal interval")
	flag.StringVar(&c.kubeletVersion, "kubelet-version", "v1.34.4+af-test-node-agent", "version reported as the node's kubeletVersion (semver: some components compare it)")
	klog.InitFlags(nil)
	flag.Parse()
	if c.kubeconfig == "" || c.rootDir == "" {
		fmt.Fprintln(os.Stderr, "node-agent: --kubeconfig and --root-dir are required")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		klog.ErrorS(err, "node agent failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(c config) error {
	root, err := filepath.Abs(c.rootDir)
	if err != nil {
		return err
	}
	c.rootDir = root
	if err := os.MkdirAll(filepath.Join(root, "pods"), 0o755); err != nil {
		return err
	}
	// Pods that run as a user reach their own directory below (it is 0750 with the pod's group);
	// these two may be passed through but not listed.
	for _, d := range []string{root, filepath.Join(root, "pods")} {
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "af-test-node-agent/" + c.nodeName
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}

	ipam, err := newPodIPAllocator(c.podNet, c.podNetLocks)
	if err != nil {
		return err
	}
	defer ipam.close()
	klog.InfoS("pod IP range", "cidr", ipam.cidr())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pods := newPodManager(client, c, ipam, rc.Host)
	logs, err := startLogServer(c.listenAddr, pods)
	if err != nil {
		return err
	}
	defer logs.Close()

	node := &nodeRegistrar{client: client, cfg: c, kubeletPort: logs.port, podCIDR: ipam.cidr()}
	if err := node.register(ctx); err != nil {
		return err
	}
	go node.heartbeat(ctx)

	if err := pods.start(ctx); err != nil {
		return err
	}
	// Tell the start script what it needs: the pod range and the log endpoint.
	info := fmt.Sprintf("{\"node\": %q, \"podCIDR\": %q, \"kubeletPort\": %d, \"pid\": %d}\n", c.nodeName, ipam.cidr(), logs.port, os.Getpid())
	if err := os.WriteFile(filepath.Join(root, "agent.json"), []byte(info), 0o644); err != nil {
		return err
	}
	klog.InfoS("node agent ready", "node", c.nodeName, "kubeletPort", logs.port)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	klog.InfoS("shutting down: killing every pod process", "signal", s.String())
	cancel()
	pods.shutdown()
	return nil
}
