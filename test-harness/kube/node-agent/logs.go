package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// logServer is the part of a kubelet's HTTPS API the API server needs for pods/log:
// GET /containerLogs/{namespace}/{pod}/{container}?tailLines=&follow=&limitBytes=&previous=
// The API server does not verify a kubelet's certificate unless it is given
// --kubelet-certificate-authority, so a self-signed one will do; nor do we check its client
// certificate: the endpoint listens on loopback only.
type logServer struct {
	srv  *http.Server
	port int
}

func startLogServer(addr string, pods *podManager) (*logServer, error) {
	cert, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/containerLogs/", func(w http.ResponseWriter, r *http.Request) { serveLogs(w, r, pods) })
	s := &logServer{
		srv:  &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second},
		port: ln.Addr().(*net.TCPAddr).Port,
	}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "log server stopped")
		}
	}()
	return s, nil
}

func (s *logServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "af-test-node-agent"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serveLogs(w http.ResponseWriter, r *http.Request, pods *podManager) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		http.Error(w, "want /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	previous := q.Get("previous") == "true"
	follow := q.Get("follow") == "true"
	target, err := pods.logFor(parts[0], parts[1], parts[2], previous)
	if err != nil {
		code := http.StatusNotFound
		if errors.As(err, new(waitingError)) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	limit := int64(-1)
	if v := q.Get("limitBytes"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			limit = n
		}
	}
	tail := -1
	if v := q.Get("tailLines"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			tail = n
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	data, err := os.ReadFile(target.path)
	if err != nil && !os.IsNotExist(err) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	offset := int64(len(data))
	if tail >= 0 {
		data = lastLines(data, tail)
	}
	written := int64(0)
	emit := func(b []byte) bool {
		if limit >= 0 && written+int64(len(b)) > limit {
			b = b[:limit-written]
		}
		n, err := w.Write(b)
		written += int64(n)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return err == nil && (limit < 0 || written < limit)
	}
	if !emit(data) || !follow {
		return
	}
	// follow: stream what is appended until the container instance exits (or the client goes)
	for {
		running := target.running()
		if chunk := readFrom(target.path, offset); len(chunk) > 0 {
			offset += int64(len(chunk))
			if !emit(chunk) {
				return
			}
			continue
		}
		if !running {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readFrom(path string, offset int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return b
}

// lastLines keeps the last n lines of data (a final line without newline counts as a line).
func lastLines(data []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	count := 0
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			count++
			if count == n {
				return data[i+1:]
			}
		}
	}
	return data
}
