package main

import "testing"

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"POD_IP": "127.77.0.1", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"--host=$(POD_IP):8786": "--host=127.77.0.1:8786",
		"$(MISSING)":            "$(MISSING)",
		"$$(POD_IP)":            "$(POD_IP)",
		"a$(EMPTY)b":            "ab",
		"$HOME and $":           "$HOME and $",
		"$(POD_IP":              "$(POD_IP",
		"$(POD_IP)$(POD_IP)":    "127.77.0.1127.77.0.1",
	} {
		if got := expandVars(in, lookup); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountRewriter(t *testing.T) {
	rw := newMountRewriter(map[string]string{
		"/etc/creds":     "/run/p/volumes/creds",
		"/etc/creds/tls": "/run/p/volumes/tls",
		"/scratch":       "/run/p/volumes/scratch",
	})
	for in, want := range map[string]string{
		"/etc/creds":                      "/run/p/volumes/creds",
		"--tls-cert=/etc/creds/tls/a.crt": "--tls-cert=/run/p/volumes/tls/a.crt",
		"--key=/etc/creds/key":            "--key=/run/p/volumes/creds/key",
		"cat /scratch/x > '/scratch/y'":   "cat /run/p/volumes/scratch/x > '/run/p/volumes/scratch/y'",
		"/etc/credsx /x/etc/creds":        "/etc/credsx /x/etc/creds",
		"a:/scratch,b:/scratch/":          "a:/run/p/volumes/scratch,b:/run/p/volumes/scratch/",
		"no paths here":                   "no paths here",
	} {
		if got := rw.rewrite(in); got != want {
			t.Errorf("rewrite(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLastLines(t *testing.T) {
	data := []byte("a\nb\nc\n")
	for n, want := range map[int]string{0: "", 1: "c\n", 2: "b\nc\n", 5: "a\nb\nc\n"} {
		if got := string(lastLines(data, n)); got != want {
			t.Errorf("lastLines(%d) = %q, want %q", n, got, want)
		}
	}
	if got := string(lastLines([]byte("a\nb"), 1)); got != "b" {
		t.Errorf("lastLines without final newline = %q", got)
	}
}
