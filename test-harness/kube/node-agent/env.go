package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// expandVars implements Kubernetes' $(VAR) syntax for env values, command and args:
// $(NAME) is replaced by NAME's value when lookup knows it and left as written otherwise,
// $$ stands for one literal $, and any other $ is kept.
func expandVars(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 { // unterminated: kept as written
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// mountRewriter maps a container's mountPaths to the host directories that stand in for them.
// A mountPath is replaced only where it stands as a whole path prefix: at the start of the string
// or after a character that cannot be part of a path (such as = , : space quotes), and followed by
// the end, a '/', or such a character. Longer mountPaths win over their own prefixes.
type mountRewriter struct {
	from []string
	to   []string
}

func newMountRewriter(m map[string]string) *mountRewriter {
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	r := &mountRewriter{}
	for _, p := range paths {
		r.from = append(r.from, p)
		r.to = append(r.to, m[p])
	}
	return r
}

func isPathByte(c byte) bool {
	return c == '/' || c == '.' || c == '-' || c == '_' || c == '~' || c == '+' || c == '@' ||
		(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func (r *mountRewriter) rewrite(s string) string {
	if len(r.from) == 0 {
		return s
	}
	var b strings.Builder
	i := 0
outer:
	for i < len(s) {
		if i == 0 || !isPathByte(s[i-1]) {
			for k, p := range r.from {
				if strings.HasPrefix(s[i:], p) {
					j := i + len(p)
					if j == len(s) || s[j] == '/' || !isPathByte(s[j]) {
						b.WriteString(r.to[k])
						i = j
						continue outer
					}
				}
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// envResolver looks up the API objects an env var may refer to, caching them per pod start.
type envResolver struct {
	ctx        context.Context
	client     kubernetes.Interface
	pod        *corev1.Pod
	podIP      string
	hostIP     string
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

func (e *envResolver) secret(name string, optional bool) (*corev1.Secret, error) {
	return cachedGet(e, e.secrets, "secret", name, optional, e.client.CoreV1().Secrets(e.pod.Namespace).Get)
}

func (e *envResolver) configMap(name string, optional bool) (*corev1.ConfigMap, error) {
	return cachedGet(e, e.configMaps, "configmap", name, optional, e.client.CoreV1().ConfigMaps(e.pod.Namespace).Get)
}

// cachedGet gets the object name (of the kind the message calls kind) through get once per pod
// start; an optional one that does not exist is nil, without an error.
func cachedGet[T any](e *envResolver, cache map[string]*T, kind, name string, optional bool,
	get func(context.Context, string, metav1.GetOptions) (*T, error)) (*T, error) {
	if o, ok := cache[name]; ok {
		return o, nil
	}
	o, err := get(e.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		o, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", kind, name, err)
	}
	cache[name] = o
	return o, nil
}

// fieldRef resolves the downward-API fields a kubelet supports.
func (e *envResolver) fieldRef(path string) (string, error) {
	p := e.pod
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return e.podIP, nil
	case "status.hostIP", "status.hostIPs":
		return e.hostIP, nil
	case "metadata.labels", "metadata.annotations":
		m := p.Labels
		if path == "metadata.annotations" {
			m = p.Annotations
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		lines := make([]string, 0, len(keys))
		for _, k := range keys {
			lines = append(lines, k+"="+strconv.Quote(m[k]))
		}
		return strings.Join(lines, "\n"), nil
	}
	for _, prefix := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(path, prefix) && strings.HasSuffix(path, "']") {
			key := path[len(prefix) : len(path)-2]
			if prefix == "metadata.labels['" {
				return p.Labels[key], nil
			}
			return p.Annotations[key], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// resourceFieldRef resolves limits.* / requests.* of a container; an unset limit falls back to
// the node's capacity, as a kubelet does with allocatable.
func (e *envResolver) resourceFieldRef(c *corev1.Container, ref *corev1.ResourceFieldSelector, nodeCPU, nodeMem string) (string, error) {
	if ref.ContainerName != "" {
		for i := range e.pod.Spec.Containers {
			if e.pod.Spec.Containers[i].Name == ref.ContainerName {
				c = &e.pod.Spec.Containers[i]
			}
		}
	}
	var q resource.Quantity
	var ok bool
	parts := strings.SplitN(ref.Resource, ".", 2)
	if len(parts) != 2 {
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	name := corev1.ResourceName(parts[1])
	if parts[0] == "limits" {
		q, ok = c.Resources.Limits[name]
	} else {
		q, ok = c.Resources.Requests[name]
	}
	if !ok {
		switch name {
		case corev1.ResourceCPU:
			q = resource.MustParse(nodeCPU)
		case corev1.ResourceMemory:
			q = resource.MustParse(nodeMem)
		default:
			q = resource.MustParse("0")
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == corev1.ResourceCPU {
		// cpu rounds up to whole divisor units, as the kubelet does
		v := (q.MilliValue() + divisor.MilliValue() - 1) / divisor.MilliValue()
		return strconv.FormatInt(v, 10), nil
	}
	v := (q.Value() + divisor.Value() - 1) / divisor.Value()
	return strconv.FormatInt(v, 10), nil
}

// containerEnv builds a container's environment before mountPath rewriting: a small host base
// (PATH, LANG, HOME = the pod directory, HOSTNAME, the apiserver as KUBERNETES_SERVICE_*, the run
// marker), then envFrom, then env in order, each value $(VAR)-expanded against what came before.
func (e *envResolver) containerEnv(c *corev1.Container, base []envVar, nodeCPU, nodeMem string) ([]envVar, error) {
	vals := map[string]string{}
	order := []string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range base {
		set(kv.name, kv.value)
	}
	lookup := func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
	for _, from := range c.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, err := e.secret(from.SecretRef.Name, from.SecretRef.Optional != nil && *from.SecretRef.Optional)
			if err != nil {
				return nil, err
			}
			if s != nil {
				for _, k := range sortedKeys(s.Data) {
					set(from.Prefix+k, string(s.Data[k]))
				}
			}
		case from.ConfigMapRef != nil:
			cm, err := e.configMap(from.ConfigMapRef.Name, from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional)
			if err != nil {
				return nil, err
			}
			if cm != nil {
				keys := make([]string, 0, len(cm.Data))
				for k := range cm.Data {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					set(from.Prefix+k, cm.Data[k])
				}
			}
		}
	}
	for _, ev := range c.Env {
		var v string
		switch {
		case ev.ValueFrom == nil:
			v = expandVars(ev.Value, lookup)
		case ev.ValueFrom.FieldRef != nil:
			var err error
			if v, err = e.fieldRef(ev.ValueFrom.FieldRef.FieldPath); err != nil {
				return nil, err
			}
		case ev.ValueFrom.SecretKeyRef != nil:
			ref := ev.ValueFrom.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			s, err := e.secret(ref.Name, optional)
			if err != nil {
				return nil, err
			}
			data, ok := []byte(nil), false
			if s != nil {
				data, ok = s.Data[ref.Key]
			}
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("secret %q has no key %q", ref.Name, ref.Key)
			}
			v = string(data)
		case ev.ValueFrom.ConfigMapKeyRef != nil:
			ref := ev.ValueFrom.ConfigMapKeyRef
			optional := ref.Optional != nil && *ref.Optional
			cm, err := e.configMap(ref.Name, optional)
			if err != nil {
				return nil, err
			}
			data, ok := "", false
			if cm != nil {
				data, ok = cm.Data[ref.Key]
			}
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("configmap %q has no key %q", ref.Name, ref.Key)
			}
			v = data
		case ev.ValueFrom.ResourceFieldRef != nil:
			var err error
			if v, err = e.resourceFieldRef(c, ev.ValueFrom.ResourceFieldRef, nodeCPU, nodeMem); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("env %q: unsupported valueFrom", ev.Name)
		}
		set(ev.Name, v)
	}
	out := make([]envVar, 0, len(order))
	for _, k := range order {
		out = append(out, envVar{k, vals[k]})
	}
	return out, nil
}

type envVar struct{ name, value string }

func envLookup(vars []envVar) func(string) (string, bool) {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.name] = v.value
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hostBaseEnv is what every pod process gets before its own env: enough of the host to run host
// programs. The host's other variables are not passed (a container does not see them either).
func hostBaseEnv(pod *corev1.Pod, podDir, apiHost, apiPort, runID string) []envVar {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	vars := []envVar{
		{"PATH", path},
		{"LANG", "C.UTF-8"},
		{"HOME", podDir},
		{"HOSTNAME", pod.Name},
	}
	if apiHost != "" {
		vars = append(vars,
			envVar{"KUBERNETES_SERVICE_HOST", apiHost},
			envVar{"KUBERNETES_SERVICE_PORT", apiPort},
			envVar{"KUBERNETES_SERVICE_PORT_HTTPS", apiPort},
		)
	}
	if runID != "" {
		vars = append(vars, envVar{"AF_KUBE_RUN_ID", runID})
	}
	return vars
}
