package attack

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// browserRequest is a request a web page open in a browser on a node can make to the node's loopback admin
// API: a "simple" cross-site request (text/plain, a form), JSON with the Origin a browser always adds, or
// any request through DNS rebinding (the page's own host name resolving to 127.0.0.1, so the Host header is
// the attacker's name).
type browserRequest struct {
	name, method, path, host, contentType, origin, fetchSite, body string
}

// browserRequests are the attacks of (d): every mutating endpoint, in every shape a page could send, plus
// the reads a rebinding page would want. keyB64 is a key to try to install.
func browserRequests(keyB64 string) []browserRequest {
	const evil = "http://evil.example"
	return []browserRequest{
		{name: "leave, text/plain with Origin", method: "POST", path: "/v1/leave", contentType: "text/plain", origin: evil, body: "{}"},
		{name: "leave, text/plain without Origin", method: "POST", path: "/v1/leave", contentType: "text/plain", body: "{}"},
		{name: "leave, form with Origin", method: "POST", path: "/v1/leave", contentType: "application/x-www-form-urlencoded", origin: evil, body: "a=b"},
		{name: "leave, multipart form", method: "POST", path: "/v1/leave", contentType: "multipart/form-data; boundary=x", origin: "null", body: "--x--\r\n"},
		{name: "leave, JSON with Origin", method: "POST", path: "/v1/leave", contentType: "application/json", origin: evil, body: "{}"},
		{name: "leave, JSON with Sec-Fetch-Site", method: "POST", path: "/v1/leave", contentType: "application/json", fetchSite: "cross-site", body: "{}"},
		{name: "leave, JSON through DNS rebinding", method: "POST", path: "/v1/leave", host: "rebind.evil.example:7948", contentType: "application/json", body: "{}"},
		{name: "force-leave n2, text/plain with Origin", method: "POST", path: "/v1/force-leave", contentType: "text/plain", origin: evil, body: `{"node":"n2"}`},
		{name: "force-leave n2, JSON with Origin", method: "POST", path: "/v1/force-leave", contentType: "application/json", origin: evil, body: `{"node":"n2"}`},
		{name: "keyring install, text/plain with Origin", method: "POST", path: "/v1/keyring", contentType: "text/plain", origin: evil,
			body: fmt.Sprintf(`{"op":"install","key":%q}`, keyB64)},
		{name: "keyring install, JSON through DNS rebinding", method: "POST", path: "/v1/keyring", host: "rebind.evil.example", contentType: "application/json",
			body: fmt.Sprintf(`{"op":"install","key":%q}`, keyB64)},
		{name: "reload, form with Origin", method: "POST", path: "/v1/reload", contentType: "application/x-www-form-urlencoded", origin: evil},
		{name: "drain, text/plain with Origin", method: "POST", path: "/v1/backends/drain", contentType: "text/plain", origin: evil,
			body: `{"frontend":"default","backend":"127.0.0.1:8080","drain":true}`},
		{name: "read status through DNS rebinding", method: "GET", path: "/v1/status", host: "rebind.evil.example:7948"},
		{name: "read members through DNS rebinding", method: "GET", path: "/v1/members", host: "rebind.evil.example"},
		{name: "read keyring through DNS rebinding", method: "GET", path: "/v1/keyring", host: "rebind.evil.example"},
	}
}

// send makes the request to the node's admin API from inside its namespace and returns the status code and
// the body.
func (n *node) send(br browserRequest) (int, string, error) {
	req, err := http.NewRequest(br.method, "http://"+adminAddr+br.path, strings.NewReader(br.body))
	if err != nil {
		return 0, "", err
	}
	if br.host != "" {
		req.Host = br.host
	}
	for k, v := range map[string]string{"Content-Type": br.contentType, "Origin": br.origin, "Sec-Fetch-Site": br.fetchSite} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := n.api.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// adminAttack sends every browser request to every node, leader first, and fails t for any the agent did not
// refuse (403 or 415). Two requests the guard must let through show the refusals are the guard's: a read
// with an IP Host, and a write without browser marks that the handler itself rejects (a frontend that does
// not exist), which changes nothing.
func adminAttack(t *testing.T, r *rig, leader string) (refused int) {
	t.Helper()
	order := []*node{r.node(leader)}
	for _, n := range r.nodes {
		if n.name != leader {
			order = append(order, n)
		}
	}
	key := base64.StdEncoding.EncodeToString(randomKey(t))
	for _, n := range order {
		for _, br := range browserRequests(key) {
			code, body, err := n.send(br)
			switch {
			case err != nil:
				t.Errorf("%s: %s: %v", n.name, br.name, err)
			case code != http.StatusForbidden && code != http.StatusUnsupportedMediaType:
				t.Errorf("%s: %s: %d %q, want 403 or 415", n.name, br.name, code, body)
			default:
				refused++
			}
		}
		if code, _, err := n.send(browserRequest{method: "GET", path: "/v1/status", host: adminAddr}); err != nil || code != http.StatusOK {
			t.Errorf("%s: control: the CLI's GET /v1/status got %d, %v; want 200", n.name, code, err)
		}
		control := browserRequest{method: "POST", path: "/v1/backends/drain", contentType: "application/json",
			body: `{"frontend":"no-such-frontend","backend":"127.0.0.1:1","drain":true}`}
		if code, body, err := n.send(control); err != nil || code != http.StatusNotFound {
			t.Errorf("%s: control: the CLI's drain of an unknown frontend got %d %q, %v; want 404 from the handler", n.name, code, body, err)
		}
	}
	return refused
}
