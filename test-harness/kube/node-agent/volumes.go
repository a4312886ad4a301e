package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// materializeVolumes writes each pod volume under <podDir>/volumes/<name> and returns the host
// directory of each volume by name. Supported: emptyDir, secret, configMap, downwardAPI,
// projected (secret, configMap, downwardAPI, serviceAccountToken, clusterTrustBundle excepted) and
// hostPath (used in place). Other kinds (persistentVolumeClaim, csi, ...) become empty dirs.
// With the pod's fsGroup, every volume but hostPath gets that group as a kubelet gives it
// (applyFSGroup): that is how a non-root pod reads its 0400 Secret files, and only that pod.
func materializeVolumes(ctx context.Context, e *envResolver, podDir string) (map[string]string, error) {
	dirs := map[string]string{}
	var fsGroup *int64
	if psc := e.pod.Spec.SecurityContext; psc != nil {
		fsGroup = psc.FSGroup
	}
	for _, v := range e.pod.Spec.Volumes {
		dir := filepath.Join(podDir, "volumes", v.Name)
		readOnly := v.EmptyDir == nil
		switch {
		case v.HostPath != nil:
			dirs[v.Name] = v.HostPath.Path
			continue
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, err
			}
		case v.Secret != nil:
			s, err := e.secret(v.Secret.SecretName, v.Secret.Optional != nil && *v.Secret.Optional)
			if err != nil {
				return nil, err
			}
			var data map[string][]byte
			if s != nil {
				data = s.Data
			}
			if err := writeKeyFiles(dir, data, v.Secret.Items, v.Secret.DefaultMode, 0o644); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		case v.ConfigMap != nil:
			cm, err := e.configMap(v.ConfigMap.Name, v.ConfigMap.Optional != nil && *v.ConfigMap.Optional)
			if err != nil {
				return nil, err
			}
			if err := writeKeyFiles(dir, configMapBytes(cm), v.ConfigMap.Items, v.ConfigMap.DefaultMode, 0o644); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		case v.DownwardAPI != nil:
			if err := writeDownward(dir, e, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		case v.Projected != nil:
			if err := writeProjected(ctx, dir, e, v.Projected); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		default:
			klog.InfoS("volume kind not supported by the test node agent: an empty directory stands in", "pod", klog.KObj(e.pod), "volume", v.Name)
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, err
			}
		}
		if fsGroup != nil {
			if err := applyFSGroup(dir, *fsGroup, readOnly); err != nil {
				return nil, fmt.Errorf("volume %q: fsGroup: %w", v.Name, err)
			}
		}
		dirs[v.Name] = dir
	}
	return dirs, nil
}

func configMapBytes(cm *corev1.ConfigMap) map[string][]byte {
	if cm == nil {
		return nil
	}
	out := map[string][]byte{}
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	return out
}

// writeKeyFiles writes data as files: every key under its own name, or only the listed items at
// their paths (a missing listed key is an error, as in a kubelet).
// A nil data (an optional object that does not exist) gives an empty directory.
func writeKeyFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, fallback os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil || data == nil {
		return err
	}
	mode := fallback
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	if len(items) == 0 {
		for k, v := range data {
			if err := writeFile(dir, k, v, mode); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %q not found", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		if err := writeFile(dir, it.Path, v, m); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, rel string, data []byte, mode os.FileMode) error {
	p := filepath.Join(dir, filepath.Clean("/"+rel))
	if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return fmt.Errorf("path %q escapes the volume", rel)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode) // WriteFile keeps the mode of an existing file
}

func writeDownward(dir string, e *envResolver, items []corev1.DownwardAPIVolumeFile, defaultMode *int32) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = e.fieldRef(it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			c := &e.pod.Spec.Containers[0]
			v, err = e.resourceFieldRef(c, it.ResourceFieldRef, "8", "16Gi")
		}
		if err != nil {
			return err
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		if err := writeFile(dir, it.Path, []byte(v), m); err != nil {
			return err
		}
	}
	return nil
}

func writeProjected(ctx context.Context, dir string, e *envResolver, p *corev1.ProjectedVolumeSource) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, src := range p.Sources {
		switch {
		case src.Secret != nil:
			s, err := e.secret(src.Secret.Name, src.Secret.Optional != nil && *src.Secret.Optional)
			if err != nil {
				return err
			}
			var data map[string][]byte
			if s != nil {
				data = s.Data
			}
			if err := writeKeyFiles(dir, data, src.Secret.Items, p.DefaultMode, 0o644); err != nil {
				return err
			}
		case src.ConfigMap != nil:
			cm, err := e.configMap(src.ConfigMap.Name, src.ConfigMap.Optional != nil && *src.ConfigMap.Optional)
			if err != nil {
				return err
			}
			if err := writeKeyFiles(dir, configMapBytes(cm), src.ConfigMap.Items, p.DefaultMode, 0o644); err != nil {
				return err
			}
		case src.DownwardAPI != nil:
			if err := writeDownward(dir, e, src.DownwardAPI.Items, p.DefaultMode); err != nil {
				return err
			}
		case src.ServiceAccountToken != nil:
			// A real bound token from the TokenRequest API (not refreshed: tests are short).
			t := src.ServiceAccountToken
			exp := t.ExpirationSeconds
			if exp == nil {
				exp = ptr.To(int64(3600))
			}
			var aud []string
			if t.Audience != "" {
				aud = []string{t.Audience}
			}
			sa := e.pod.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			tr, err := e.client.CoreV1().ServiceAccounts(e.pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{
					Audiences:         aud,
					ExpirationSeconds: exp,
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: e.pod.Name, UID: e.pod.UID},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("service account token: %w", err)
			}
			if err := writeFile(dir, t.Path, []byte(tr.Status.Token), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// containerMounts maps each of the container's mountPaths to the host path standing in for it.
func containerMounts(c *corev1.Container, volumeDirs map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range c.VolumeMounts {
		dir, ok := volumeDirs[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q: no such volume", m.Name)
		}
		if m.SubPath != "" {
			dir = filepath.Join(dir, filepath.Clean("/"+m.SubPath))
		}
		out[strings.TrimSuffix(m.MountPath, "/")] = dir
	}
	return out, nil
}
