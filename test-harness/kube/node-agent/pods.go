package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// podManager watches the pods bound to this node and runs one podWorker per pod UID.
type podManager struct {
	client  kubernetes.Interface
	cfg     config
	ipam    *podIPAllocator
	apiHost string
	apiPort string

	mu       sync.Mutex
	workers  map[types.UID]*podWorker
	byName   map[string]*podWorker // namespace/name -> newest worker, for the log endpoint
	finished map[types.UID]bool    // workers that are done: later events for them are ignored
	stopping bool
	wg       sync.WaitGroup
}

func newPodManager(client kubernetes.Interface, cfg config, ipam *podIPAllocator, apiURL string) *podManager {
	m := &podManager{client: client, cfg: cfg, ipam: ipam,
		workers: map[types.UID]*podWorker{}, byName: map[string]*podWorker{}, finished: map[types.UID]bool{}}
	if u, err := url.Parse(apiURL); err == nil && u.Host != "" {
		m.apiHost, m.apiPort = u.Hostname(), u.Port()
		if m.apiPort == "" {
			m.apiPort = "443"
		}
	}
	return m
}

func (m *podManager) start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(m.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + m.cfg.nodeName
		}))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { m.onPod(ctx, obj) },
		UpdateFunc: func(_, obj interface{}) { m.onPod(ctx, obj) },
		DeleteFunc: m.onDelete,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("pod informer did not sync")
	}
	return nil
}

func (m *podManager) onPod(ctx context.Context, obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[pod.UID]; w != nil {
		w.update(pod)
		return
	}
	if m.stopping || m.finished[pod.UID] {
		return
	}
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if terminal || pod.DeletionTimestamp != nil {
		// Not ours to run (finished before this agent saw it, or already being deleted before it
		// ever ran): only complete a pending deletion, as a kubelet would.
		m.finished[pod.UID] = true
		if pod.DeletionTimestamp != nil {
			go m.forceDelete(ctx, pod)
		}
		return
	}
	w := newPodWorker(ctx, m, pod)
	m.workers[pod.UID] = w
	m.byName[pod.Namespace+"/"+pod.Name] = w
	m.wg.Add(1)
	go w.run()
}

func (m *podManager) onDelete(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[pod.UID]; w != nil {
		w.markGone()
	}
}

func (m *podManager) forget(w *podWorker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.workers, w.uid)
	if m.byName[w.key] == w {
		delete(m.byName, w.key)
	}
	m.finished[w.uid] = true
}

func (m *podManager) forceDelete(ctx context.Context, pod *corev1.Pod) {
	err := m.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && ctx.Err() == nil {
		klog.V(2).InfoS("final pod delete", "pod", klog.KObj(pod), "err", err)
	}
}

// shutdown kills every pod process this agent started and waits (bounded) for the workers.
func (m *podManager) shutdown() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		klog.InfoS("some pod workers did not finish in 15s")
	}
}

// logTarget is what the log endpoint needs about one container instance.
type logTarget struct {
	path    string
	running func() bool
}

func (m *podManager) logFor(namespace, pod, container string, previous bool) (logTarget, error) {
	m.mu.Lock()
	w := m.byName[namespace+"/"+pod]
	m.mu.Unlock()
	if w == nil {
		return logTarget{}, fmt.Errorf("pod %s/%s is not known to this node", namespace, pod)
	}
	return w.logFor(container, previous)
}

// ---------------------------------------------------------------- one pod

type containerRun struct {
	spec  corev1.Container
	init  bool
	argv  []string
	env   []string
	dir   string
	state string // waiting | running | terminated

	waitingReason, waitingMessage string
	startedAt, finishedAt         metav1.Time
	exitCode                      int32
	termReason, termMessage       string
	restartCount                  int32
	last                          *corev1.ContainerStateTerminated
	ident                         procIdentity // the user the process runs as (securityContext)
	pid                           int
	done                          chan struct{} // closed when the running instance exits
	exitPending                   bool          // exited, not yet handled by the worker loop
	restartAt                     time.Time     // zero: no restart scheduled
	backoff                       time.Duration
}

func (c *containerRun) logPath(podDir string, instance int32) string {
	return filepath.Join(podDir, "logs", c.spec.Name, strconv.Itoa(int(instance))+".log")
}

type podWorker struct {
	m      *podManager
	ctx    context.Context
	uid    types.UID
	key    string
	name   string
	ns     string
	policy corev1.RestartPolicy

	mu     sync.Mutex // guards pod, gone and the containers' states (read by the log endpoint)
	pod    *corev1.Pod
	gone   bool
	notify chan struct{}
	wake   chan struct{}

	podIP     string
	podDir    string
	startTime metav1.Time
	inits     []*containerRun
	mains     []*containerRun
	stage     int // index of the running init container; len(inits) once the main ones run
	prepared  bool
	terminal  corev1.PodPhase
	prepErr   string
	transit   map[corev1.PodConditionType]metav1.Time
}

func newPodWorker(ctx context.Context, m *podManager, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		m: m, ctx: ctx, uid: pod.UID, key: pod.Namespace + "/" + pod.Name, name: pod.Name, ns: pod.Namespace,
		policy: pod.Spec.RestartPolicy, pod: pod.DeepCopy(),
		notify: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		podDir:  filepath.Join(m.cfg.rootDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, string(pod.UID)[:8])),
		transit: map[corev1.PodConditionType]metav1.Time{},
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, &containerRun{spec: c, init: true, state: "waiting", waitingReason: "PodInitializing"})
	}
	for _, c := range pod.Spec.Containers {
		reason := "ContainerCreating"
		if len(w.inits) > 0 {
			reason = "PodInitializing"
		}
		w.mains = append(w.mains, &containerRun{spec: c, state: "waiting", waitingReason: reason})
	}
	return w
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod.DeepCopy()
	w.mu.Unlock()
	poke(w.notify)
}

func (w *podWorker) markGone() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	poke(w.notify)
}

func (w *podWorker) deletionRequested() (bool, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone || w.pod.DeletionTimestamp != nil, w.gone
}

func (w *podWorker) run() {
	defer w.m.wg.Done()
	defer w.m.forget(w)
	ip := "127.0.0.1" // hostNetwork pods share the node's address
	w.mu.Lock()
	hostNetwork := w.pod.Spec.HostNetwork
	w.mu.Unlock()
	if !hostNetwork {
		var err error
		if ip, err = w.m.ipam.allocate(); err != nil {
			klog.ErrorS(err, "no pod IP", "pod", w.key)
			return
		}
		defer w.m.ipam.release(ip)
	}
	w.podIP = ip
	w.startTime = metav1.Now()
	if err := os.MkdirAll(w.podDir, 0o755); err != nil {
		klog.ErrorS(err, "pod dir", "pod", w.key)
	}
	klog.InfoS("pod assigned", "pod", w.key, "podIP", ip, "dir", w.podDir)
	w.pushStatus()

	var timer *time.Timer
	var timerC <-chan time.Time
	for {
		if del, gone := w.deletionRequested(); del {
			w.terminate(gone)
			return
		}
		changed := false
		if !w.prepared {
			if err := w.prepare(); err != nil {
				if w.prepErr != err.Error() {
					klog.InfoS("pod not startable yet", "pod", w.key, "err", err)
					w.prepErr = err.Error()
					w.setWaiting("CreateContainerConfigError", err.Error())
					changed = true
				}
			} else {
				w.prepared = true
				w.prepErr = ""
				w.startStage()
				changed = true
			}
		}
		if w.prepared && w.terminal == "" {
			changed = w.reap() || changed
			changed = w.restartDue() || changed
		}
		if changed {
			w.pushStatus()
		}
		// sleep until something happens: a pod update, a process exit, a due restart, or a retry
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
		if d, ok := w.nextWake(); ok {
			timer = time.NewTimer(d)
			timerC = timer.C
		}
		select {
		case <-w.ctx.Done():
			w.killAll(2 * time.Second)
			return
		case <-w.notify:
		case <-w.wake:
		case <-timerC:
		}
	}
}

func (w *podWorker) nextWake() (time.Duration, bool) {
	if !w.prepared {
		return 2 * time.Second, true
	}
	var next time.Time
	for _, c := range append(append([]*containerRun{}, w.inits...), w.mains...) {
		if !c.restartAt.IsZero() && (next.IsZero() || c.restartAt.Before(next)) {
			next = c.restartAt
		}
	}
	if next.IsZero() {
		return 0, false
	}
	d := time.Until(next)
	if d < 0 {
		d = 0
	}
	return d, true
}

// prepare materialises volumes and resolves every container's command, args, env and dir.
func (w *podWorker) prepare() error {
	w.mu.Lock()
	pod := w.pod.DeepCopy()
	w.mu.Unlock()
	e := &envResolver{ctx: w.ctx, client: w.m.client, pod: pod, podIP: w.podIP, hostIP: "127.0.0.1",
		secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{}}
	// Who each container runs as, refused as a kubelet refuses it (CreateContainerConfigError).
	all := append(append([]*containerRun{}, w.inits...), w.mains...)
	ids := make([]procIdentity, len(all))
	for i, c := range all {
		id, err := containerIdentity(pod, &c.spec, os.Getuid())
		if err != nil {
			return err
		}
		ids[i] = id
	}
	home, tmp := w.podDir, ""
	if group, ok := podGroup(pod, ids); ok {
		user := ids[0]
		for _, id := range ids {
			if id.set {
				user = id
				break
			}
		}
		var err error
		if home, tmp, err = securePodDir(w.podDir, group, user); err != nil {
			return fmt.Errorf("pod directory: %w", err)
		}
	}
	volumeDirs, err := materializeVolumes(w.ctx, e, w.podDir)
	if err != nil {
		return err
	}
	base := hostBaseEnv(pod, home, w.m.apiHost, w.m.apiPort, w.m.cfg.runID)
	if tmp != "" {
		base = append(base, envVar{"TMPDIR", tmp})
	}
	for i, c := range all {
		c.ident = ids[i]
		mounts, err := containerMounts(&c.spec, volumeDirs)
		if err != nil {
			return err
		}
		rw := newMountRewriter(mounts)
		raw, err := e.containerEnv(&c.spec, base, nodeCPUOf(w.m.cfg), w.m.cfg.memory)
		if err != nil {
			return fmt.Errorf("container %q: %w", c.spec.Name, err)
		}
		lookup := envLookup(raw)
		words := append(append([]string{}, c.spec.Command...), c.spec.Args...)
		argv := make([]string, 0, len(words))
		for _, s := range words {
			argv = append(argv, rw.rewrite(expandVars(s, lookup)))
		}
		// base variables are host facts (HOME is the pod dir): never rewritten
		isBase := map[string]string{}
		for _, b := range base {
			isBase[b.name] = b.value
		}
		env := make([]string, 0, len(raw)+1)
		for _, v := range raw {
			if bv, ok := isBase[v.name]; ok && bv == v.value {
				env = append(env, v.name+"="+v.value)
			} else {
				env = append(env, v.name+"="+rw.rewrite(v.value))
			}
		}
		if w.m.cfg.runID != "" {
			env = append(env, "AF_KUBE_RUN_ID="+w.m.cfg.runID) // the stop script's marker wins
		}
		dir := home
		if c.spec.WorkingDir != "" {
			if r := rw.rewrite(c.spec.WorkingDir); r != c.spec.WorkingDir {
				dir = r
			}
		}
		c.argv, c.env, c.dir = argv, env, dir
	}
	return nil
}

func nodeCPUOf(c config) string { return c.cpu }

func (w *podWorker) setWaiting(reason, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range append(append([]*containerRun{}, w.inits...), w.mains...) {
		if c.state == "waiting" {
			c.waitingReason, c.waitingMessage = reason, msg
		}
	}
}

// startStage starts the current init container, or every main container once inits are done.
func (w *podWorker) startStage() {
	if w.stage < len(w.inits) {
		w.startContainer(w.inits[w.stage])
		return
	}
	for _, c := range w.mains {
		w.startContainer(c)
	}
}

func (w *podWorker) startContainer(c *containerRun) {
	logPath := c.logPath(w.podDir, c.restartCount)
	fail := func(err error) {
		klog.InfoS("container did not start", "pod", w.key, "container", c.spec.Name, "err", err)
		if f, e := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); e == nil {
			fmt.Fprintf(f, "node agent: %v\n", err)
			f.Close()
		}
		w.mu.Lock()
		now := metav1.Now()
		c.state, c.startedAt, c.finishedAt = "terminated", now, now
		c.exitCode, c.termReason, c.termMessage = 128, "StartError", err.Error()
		c.exitPending = true
		c.done = make(chan struct{})
		close(c.done)
		w.mu.Unlock()
		poke(w.wake)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		fail(err)
		return
	}
	if len(c.argv) == 0 {
		fail(fmt.Errorf("container %q has no command or args: the test node agent runs no images, only commands", c.spec.Name))
		return
	}
	w.mu.Lock()
	c.state, c.waitingReason, c.waitingMessage = "waiting", "", ""
	w.mu.Unlock()
	proc, err := startProcess(c.argv, c.env, c.dir, logPath, c.ident.credential())
	if err != nil {
		fail(err)
		return
	}
	done := make(chan struct{})
	w.mu.Lock()
	c.state, c.startedAt, c.pid, c.done = "running", metav1.Now(), proc.pid, done
	c.finishedAt, c.exitCode, c.termReason, c.termMessage = metav1.Time{}, 0, "", ""
	w.mu.Unlock()
	klog.InfoS("container started", "pod", w.key, "container", c.spec.Name, "pid", proc.pid, "argv", strings.Join(c.argv, " "))
	go func() {
		code, reason := proc.wait()
		// Orphans left in the container's process group go with it, as with a container.
		killGroup(proc.pid, true)
		w.mu.Lock()
		c.state, c.finishedAt, c.exitCode, c.termReason = "terminated", metav1.Now(), code, reason
		c.exitPending = true
		w.mu.Unlock()
		close(done)
		klog.InfoS("container exited", "pod", w.key, "container", c.spec.Name, "exitCode", code)
		poke(w.wake)
	}()
}

// reap handles containers that exited since the last loop: restart policy, next stage, phase.
func (w *podWorker) reap() bool {
	changed := false
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range append(append([]*containerRun{}, w.inits...), w.mains...) {
		if !c.exitPending {
			continue
		}
		c.exitPending = false
		changed = true
		restart := w.policy == corev1.RestartPolicyAlways || (w.policy == corev1.RestartPolicyOnFailure && c.exitCode != 0)
		if c.init {
			if c.exitCode == 0 {
				w.stage++
				w.mu.Unlock()
				w.startStage()
				w.mu.Lock()
				continue
			}
			restart = w.policy != corev1.RestartPolicyNever
			if !restart {
				w.terminal = corev1.PodFailed
				continue
			}
		}
		if restart {
			// back-off 1s, 2s, 4s ... 30s; reset after 5 minutes of running
			if c.backoff == 0 || c.finishedAt.Sub(c.startedAt.Time) > 5*time.Minute {
				c.backoff = time.Second
			} else if c.backoff < 30*time.Second {
				c.backoff *= 2
				if c.backoff > 30*time.Second {
					c.backoff = 30 * time.Second
				}
			}
			c.restartAt = time.Now().Add(c.backoff)
		}
	}
	if w.terminal == "" && w.stage >= len(w.inits) {
		allDone, allOK := true, true
		for _, c := range w.mains {
			if c.state != "terminated" || !c.restartAt.IsZero() {
				allDone = false
			}
			if c.exitCode != 0 {
				allOK = false
			}
		}
		if allDone {
			w.terminal = corev1.PodFailed
			if allOK {
				w.terminal = corev1.PodSucceeded
			}
		}
	}
	return changed
}

func (w *podWorker) restartDue() bool {
	changed := false
	for _, c := range append(append([]*containerRun{}, w.inits...), w.mains...) {
		if c.restartAt.IsZero() || time.Now().Before(c.restartAt) {
			continue
		}
		w.mu.Lock()
		c.restartAt = time.Time{}
		c.last = &corev1.ContainerStateTerminated{ExitCode: c.exitCode, Reason: c.termReason, Message: c.termMessage,
			StartedAt: c.startedAt, FinishedAt: c.finishedAt, ContainerID: containerID(c.pid)}
		c.restartCount++
		w.mu.Unlock()
		w.startContainer(c)
		changed = true
	}
	return changed
}

// terminate is the deletion path: SIGTERM, the grace period (capped), SIGKILL, a final status,
// then the delete with grace period 0 that lets the API server drop the pod.
func (w *podWorker) terminate(gone bool) {
	w.mu.Lock()
	grace := int64(30)
	if w.pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *w.pod.Spec.TerminationGracePeriodSeconds
	}
	if w.pod.DeletionGracePeriodSeconds != nil {
		grace = *w.pod.DeletionGracePeriodSeconds
	}
	pod := w.pod.DeepCopy()
	w.mu.Unlock()
	d := time.Duration(grace) * time.Second
	if d > w.m.cfg.maxGrace {
		d = w.m.cfg.maxGrace
	}
	klog.InfoS("terminating pod", "pod", w.key, "grace", d)
	w.killAll(d)
	if gone {
		return
	}
	if w.prepared {
		w.reap()
		w.mu.Lock()
		if w.terminal == "" {
			w.terminal = corev1.PodFailed
			allOK := true
			for _, c := range w.mains {
				if c.exitCode != 0 || c.state != "terminated" {
					allOK = false
				}
			}
			if allOK {
				w.terminal = corev1.PodSucceeded
			}
		}
		w.mu.Unlock()
	} else {
		w.terminal = corev1.PodFailed
	}
	w.pushStatus()
	w.m.forceDelete(w.ctx, pod)
}

// killAll: SIGTERM to every running container's process group, up to grace for them to exit,
// then SIGKILL.
func (w *podWorker) killAll(grace time.Duration) {
	w.mu.Lock()
	var running []*containerRun
	for _, c := range append(append([]*containerRun{}, w.inits...), w.mains...) {
		c.restartAt = time.Time{}
		if c.state == "running" {
			running = append(running, c)
		}
	}
	w.mu.Unlock()
	for _, c := range running {
		killGroup(c.pid, false)
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for _, c := range running {
		select {
		case <-c.done:
		case <-deadline.C:
		}
	}
	for _, c := range running {
		killGroup(c.pid, true)
	}
	for _, c := range running {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			klog.InfoS("process did not exit after SIGKILL", "pod", w.key, "container", c.spec.Name, "pid", c.pid)
		}
	}
}

func containerID(pid int) string {
	if pid == 0 {
		return ""
	}
	return fmt.Sprintf("host-process://%d", pid)
}

func (w *podWorker) containerStatus(c *containerRun, ready bool) corev1.ContainerStatus {
	st := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: "", RestartCount: c.restartCount,
		ContainerID: containerID(c.pid), LastTerminationState: corev1.ContainerState{Terminated: c.last},
	}
	switch {
	case c.state == "running":
		st.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
		st.Started = ptr.To(true)
		st.Ready = ready
	case c.state == "terminated" && !c.restartAt.IsZero():
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container %s", c.backoff, c.spec.Name)}
		st.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: c.exitCode, Reason: c.termReason,
			Message: c.termMessage, StartedAt: c.startedAt, FinishedAt: c.finishedAt, ContainerID: containerID(c.pid)}
		st.Started = ptr.To(false)
	case c.state == "terminated":
		st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: c.exitCode, Reason: c.termReason,
			Message: c.termMessage, StartedAt: c.startedAt, FinishedAt: c.finishedAt, ContainerID: containerID(c.pid)}
		st.Started = ptr.To(false)
	default:
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waitingReason, Message: c.waitingMessage}
		st.Started = ptr.To(false)
	}
	if st.LastTerminationState.Terminated == nil {
		st.LastTerminationState = corev1.ContainerState{}
	}
	return st
}

// buildStatus turns the worker's state into the pod status fields a kubelet owns.
func (w *podWorker) buildStatus(cur *corev1.PodStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	initialized := w.stage >= len(w.inits)
	phase := corev1.PodPending
	allRunning := initialized && w.prepared
	for _, c := range w.mains {
		if c.state != "running" {
			allRunning = false
		}
		if initialized && (c.state == "running" || !c.restartAt.IsZero()) {
			phase = corev1.PodRunning
		}
	}
	if initialized && w.prepared && phase == corev1.PodPending {
		phase = corev1.PodRunning // a main container exited and others are about to be reaped
	}
	if w.terminal != "" {
		phase = w.terminal
		allRunning = false
	}
	cur.Phase = phase
	cur.HostIP = "127.0.0.1"
	cur.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	cur.PodIP = w.podIP
	cur.PodIPs = []corev1.PodIP{{IP: w.podIP}}
	cur.StartTime = &w.startTime
	cur.Reason, cur.Message = "", ""
	cur.InitContainerStatuses = nil
	for i, c := range w.inits {
		cur.InitContainerStatuses = append(cur.InitContainerStatuses, w.containerStatus(c, i < w.stage))
	}
	cur.ContainerStatuses = nil
	for _, c := range w.mains {
		// no probes: a running main container is ready once the init containers are done
		cur.ContainerStatuses = append(cur.ContainerStatuses, w.containerStatus(c, initialized && w.terminal == ""))
	}
	b := func(v bool) corev1.ConditionStatus {
		if v {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	readyReason := ""
	if !allRunning {
		readyReason = "ContainersNotReady"
		if w.terminal != "" {
			readyReason = "PodCompleted"
		}
	}
	initReason := ""
	if !initialized {
		initReason = "ContainersNotInitialized"
	}
	w.setCondition(cur, corev1.PodReadyToStartContainers, b(w.prepared && w.terminal == ""), "")
	w.setCondition(cur, corev1.PodInitialized, b(initialized), initReason)
	w.setCondition(cur, corev1.ContainersReady, b(allRunning), readyReason)
	w.setCondition(cur, corev1.PodReady, b(allRunning), readyReason)
}

func (w *podWorker) setCondition(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, reason string) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != s {
				st.Conditions[i].LastTransitionTime = metav1.Now()
			}
			st.Conditions[i].Status, st.Conditions[i].Reason = s, reason
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.Now()})
}

// pushStatus writes the status (keeping conditions other components own, such as PodScheduled).
func (w *podWorker) pushStatus() {
	pods := w.m.client.CoreV1().Pods(w.ns)
	for attempt := 0; attempt < 10; attempt++ {
		cur, err := pods.Get(w.ctx, w.name, metav1.GetOptions{})
		if err != nil || cur.UID != w.uid {
			return // deleted (or replaced): nothing to report to
		}
		if cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed {
			return // terminal phases are final
		}
		w.buildStatus(&cur.Status)
		_, err = pods.UpdateStatus(w.ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if w.ctx.Err() != nil {
			return
		}
		klog.V(2).InfoS("pod status update retry", "pod", w.key, "err", err)
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	klog.InfoS("pod status update failed", "pod", w.key)
}

func (w *podWorker) logFor(container string, previous bool) (logTarget, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range append(append([]*containerRun{}, w.inits...), w.mains...) {
		if c.spec.Name != container {
			continue
		}
		instance := c.restartCount
		if previous {
			if instance == 0 {
				return logTarget{}, fmt.Errorf("previous terminated container %q in pod %q not found", container, w.name)
			}
			instance--
			return logTarget{path: c.logPath(w.podDir, instance), running: func() bool { return false }}, nil
		}
		done := c.done
		if done == nil { // as a kubelet answers for a container that never ran
			return logTarget{}, waitingError{fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, w.name, c.waitingReason)}
		}
		return logTarget{path: c.logPath(w.podDir, instance), running: func() bool {
			select {
			case <-done:
				return false
			default:
				return true
			}
		}}, nil
	}
	return logTarget{}, fmt.Errorf("container %q is not in pod %q", container, w.name)
}

// waitingError: the container has not started yet (HTTP 400, as from a kubelet).
type waitingError struct{ msg string }

func (e waitingError) Error() string { return e.msg }
