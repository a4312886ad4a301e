package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// nodeRegistrar creates the Node and keeps it Ready: a status update (Ready heartbeat) and a
// kube-node-lease Lease renewal every cfg.heartbeat, as a kubelet does.
type nodeRegistrar struct {
	client      kubernetes.Interface
	cfg         config
	kubeletPort int
	podCIDR     string
}

func (r *nodeRegistrar) capacity() (corev1.ResourceList, error) {
	cpu, err := resource.ParseQuantity(r.cfg.cpu)
	if err != nil {
		return nil, fmt.Errorf("--cpu: %w", err)
	}
	mem, err := resource.ParseQuantity(r.cfg.memory)
	if err != nil {
		return nil, fmt.Errorf("--memory: %w", err)
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:              cpu,
		corev1.ResourceMemory:           mem,
		corev1.ResourcePods:             *resource.NewQuantity(int64(r.cfg.maxPods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}, nil
}

func (r *nodeRegistrar) status(capacity corev1.ResourceList, now metav1.Time, since metav1.Time) corev1.NodeStatus {
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: since}
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "test node agent: no pressure"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "test node agent: no pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "test node agent: no pressure"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "test node agent is posting ready status"),
		},
		// Only an InternalIP: the apiserver reaches the log endpoint there (a Hostname address
		// would have to resolve).
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(r.kubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               "af-test-node",
			SystemUUID:              "af-test-node",
			BootID:                  "af-test-node",
			KernelVersion:           "host",
			OSImage:                 "host processes (AF Gateway test node agent)",
			ContainerRuntimeVersion: "host-process://v1",
			KubeletVersion:          r.cfg.kubeletVersion,
			KubeProxyVersion:        "",
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
	}
}

func (r *nodeRegistrar) register(ctx context.Context) error {
	capacity, err := r.capacity()
	if err != nil {
		return err
	}
	now := metav1.Now()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: r.cfg.nodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname":     r.cfg.nodeName,
				"kubernetes.io/os":           runtime.GOOS,
				"kubernetes.io/arch":         runtime.GOARCH,
				"af-gateway.test/node-agent": "true",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: r.podCIDR, PodCIDRs: []string{r.podCIDR}},
	}
	_, err = r.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", r.cfg.nodeName, err)
	}
	if err := r.postStatus(ctx, capacity, now); err != nil {
		return fmt.Errorf("node %s status: %w", r.cfg.nodeName, err)
	}
	klog.InfoS("node registered", "node", r.cfg.nodeName)
	if err := r.renewLease(ctx); err != nil {
		// kube-node-lease may not exist yet on a brand-new cluster: the heartbeat retries.
		klog.InfoS("node lease not created yet", "err", err)
	}
	return nil
}

func (r *nodeRegistrar) heartbeat(ctx context.Context) {
	capacity, _ := r.capacity()
	since := metav1.Now()
	t := time.NewTicker(r.cfg.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.postStatus(ctx, capacity, since)
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "node heartbeat failed")
		}
		if err := r.renewLease(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "node lease renewal failed")
		}
	}
}

// postStatus writes the node status (Ready, heartbeat now), re-reading the node on conflicts:
// controllers annotate and taint a new node while we write.
func (r *nodeRegistrar) postStatus(ctx context.Context, capacity corev1.ResourceList, since metav1.Time) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := r.client.CoreV1().Nodes().Get(ctx, r.cfg.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status = r.status(capacity, metav1.Now(), since)
		_, err = r.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (r *nodeRegistrar) renewLease(ctx context.Context) error {
	leases := r.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, r.cfg.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: r.cfg.nodeName, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(r.cfg.nodeName),
				LeaseDurationSeconds: ptr.To(int32(40)),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}
