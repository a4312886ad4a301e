package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestContainerIdentity(t *testing.T) {
	pod := func(psc *corev1.PodSecurityContext) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: psc}}
		p.Name, p.Namespace = "p", "ns"
		return p
	}
	c := &corev1.Container{Name: "c"}

	// pod-level user, fsGroup and supplementalGroups: the only groups the process gets
	id, err := containerIdentity(pod(&corev1.PodSecurityContext{RunAsUser: ptr.To(int64(2001)), RunAsGroup: ptr.To(int64(2101)),
		FSGroup: ptr.To(int64(2101)), SupplementalGroups: []int64{7}, RunAsNonRoot: ptr.To(true)}), c, 0)
	if err != nil || !id.set || id.uid != 2001 || id.gid != 2101 || len(id.groups) != 2 || id.groups[0] != 2101 || id.groups[1] != 7 {
		t.Fatalf("pod-level identity: %+v %v", id, err)
	}
	// the container's runAsUser wins
	cc := &corev1.Container{Name: "c", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To(int64(3000))}}
	if id, _ := containerIdentity(pod(&corev1.PodSecurityContext{RunAsUser: ptr.To(int64(2001))}), cc, 0); id.uid != 3000 || id.gid != 0 {
		t.Fatalf("container-level identity: %+v", id)
	}
	// no securityContext: the agent's own user, no credential change
	if id, err := containerIdentity(pod(nil), c, 0); err != nil || id.set || id.credential() != nil {
		t.Fatalf("no securityContext: %+v %v", id, err)
	}
	// a credential clears the supplementary groups even when the pod names none
	if cr := (procIdentity{set: true, uid: 5, gid: 6}).credential(); cr == nil || cr.Groups == nil || len(cr.Groups) != 0 {
		t.Fatalf("credential: %+v", cr)
	}
	// runAsNonRoot refusals, in the kubelet's words
	if _, err := containerIdentity(pod(&corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(0))}), c, 0); err == nil || !strings.Contains(err.Error(), "breaks non-root policy") {
		t.Fatalf("runAsUser 0 with runAsNonRoot: %v", err)
	}
	if _, err := containerIdentity(pod(&corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}), c, 0); err == nil || !strings.Contains(err.Error(), "will run as root") {
		t.Fatalf("no runAsUser with runAsNonRoot under a root agent: %v", err)
	}
	if _, err := containerIdentity(pod(&corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}), c, 1000); err != nil {
		t.Fatalf("no runAsUser with runAsNonRoot under a non-root agent: %v", err)
	}
}

func TestApplyFSGroup(t *testing.T) {
	dir := t.TempDir()
	if err := writeKeyFiles(dir, map[string][]byte{"key.pem": []byte("k")}, nil, ptr.To(int32(0o400)), 0o644); err != nil {
		t.Fatal(err)
	}
	gid := int64(os.Getgid()) // a group this test may give away without root
	if err := applyFSGroup(dir, gid, true); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil || st.Mode().Perm() != 0o440 {
		t.Fatalf("secret file mode %v %v, want 0440", st.Mode().Perm(), err)
	}
	if st, _ := os.Stat(dir); st.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("volume dir %v: want setgid", st.Mode())
	}
}
