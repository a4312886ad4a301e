package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// procIdentity is who a container's processes run as, from the pod's and the container's
// securityContext as a kubelet reads them: runAsUser and runAsGroup (the container's win over the
// pod's), supplementary groups fsGroup and supplementalGroups and nothing else (never the agent's
// own groups). set is false when neither says runAsUser: the process then runs as the agent.
type procIdentity struct {
	set    bool
	uid    uint32
	gid    uint32
	groups []uint32
}

// credential is what startProcess hands to the child (nil: the agent's own identity).
func (id procIdentity) credential() *syscall.Credential {
	if !id.set {
		return nil
	}
	groups := append([]uint32{}, id.groups...) // empty: setgroups(0), the agent's groups cleared
	return &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: groups}
}

// containerIdentity resolves a container's identity, or the error a kubelet reports (as the
// container's CreateContainerConfigError) when runAsNonRoot cannot hold: an explicit runAsUser 0,
// or no runAsUser at all while the agent itself (standing in for the image's user) is root.
func containerIdentity(pod *corev1.Pod, c *corev1.Container, agentUID int) (procIdentity, error) {
	var uid, gid *int64
	var nonRoot *bool
	var groups []uint32
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
		if psc.FSGroup != nil {
			groups = append(groups, uint32(*psc.FSGroup))
		}
		for _, g := range psc.SupplementalGroups {
			groups = append(groups, uint32(g))
		}
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			gid = csc.RunAsGroup
		}
		if csc.RunAsNonRoot != nil {
			nonRoot = csc.RunAsNonRoot
		}
	}
	podRef := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
	if nonRoot != nil && *nonRoot {
		if uid == nil && agentUID == 0 {
			return procIdentity{}, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podRef, c.Name)
		}
		if uid != nil && *uid == 0 {
			return procIdentity{}, fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podRef, c.Name)
		}
	}
	if uid == nil {
		return procIdentity{}, nil
	}
	if *uid < 0 || (gid != nil && *gid < 0) {
		return procIdentity{}, fmt.Errorf("container %s: negative runAsUser/runAsGroup", c.Name)
	}
	id := procIdentity{set: true, uid: uint32(*uid), groups: groups}
	if gid != nil {
		id.gid = uint32(*gid)
	} // else group 0, as a runtime does for an image without that user in its /etc/passwd
	return id, nil
}

// podGroup is the group that may enter the pod's directory (its volumes, HOME and TMPDIR): fsGroup,
// else the pod's runAsGroup, else the first container's group. ok is false for a pod whose
// processes run as the agent.
func podGroup(pod *corev1.Pod, ids []procIdentity) (uint32, bool) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.FSGroup != nil {
			return uint32(*psc.FSGroup), true
		}
		if psc.RunAsGroup != nil && psc.RunAsUser != nil {
			return uint32(*psc.RunAsGroup), true
		}
	}
	for _, id := range ids {
		if id.set {
			return id.gid, true
		}
	}
	return 0, false
}

// securePodDir gives a pod whose processes run as a user what a container has to itself, on the
// shared host: the pod directory root-owned, mode 0750 with the pod's group (its processes may read
// their volumes and nobody else's processes may enter), and a HOME and a TMPDIR of the pod's user
// (0700), so no two pods share /tmp. Returns the HOME and TMPDIR, empty for a pod running as the agent.
func securePodDir(podDir string, group uint32, user procIdentity) (home, tmp string, err error) {
	if err := os.Chown(podDir, 0, int(group)); err != nil {
		return "", "", err
	}
	if err := os.Chmod(podDir, 0o750); err != nil {
		return "", "", err
	}
	home, tmp = filepath.Join(podDir, "home"), filepath.Join(podDir, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
			return "", "", err
		}
		if err := os.Lchown(d, int(user.uid), int(user.gid)); err != nil {
			return "", "", err
		}
	}
	return home, tmp, nil
}

// applyFSGroup does to a materialised volume what a kubelet's SetVolumeOwnership does with fsGroup:
// every file and directory gets the group fsGroup and the group bits of the owner's (read for
// read-only volumes: secret, configMap, downwardAPI, projected; read-write for emptyDir), and
// directories get setgid. The owner stays root. So a Secret with defaultMode 0400 becomes
// root:fsGroup 0440: readable by the pod's processes (fsGroup is one of their groups) and by no
// other pod's user.
func applyFSGroup(dir string, fsGroup int64, readOnly bool) error {
	mask := fs.FileMode(0o660)
	if readOnly {
		mask = 0o440
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(fsGroup)); err != nil {
			return err
		}
		m := info.Mode().Perm() | mask
		if d.IsDir() {
			m |= 0o110 | fs.ModeSetgid
		}
		return os.Chmod(p, m)
	})
}
