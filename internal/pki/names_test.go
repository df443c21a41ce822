package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestValidNodeName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"lb1", true},
		{"LB-1.example_2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"lb 1", false},
		{"lb1\x1b[31m", false},
		{"lb/1", false},
		{"lb1:7946", false},
		{"lé", false},
	}
	for _, tt := range tests {
		if got := ValidNodeName(tt.name); got != tt.ok {
			t.Errorf("ValidNodeName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestNodeNames(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name string
		dns  []string
		uris []string
		want []string
	}{
		{"DNS only", []string{"lb1"}, nil, []string{"lb1"}},
		{"URI only", nil, []string{"vipd://lb1"}, []string{"lb1"}},
		{"both, deduplicated", []string{"lb1", "lb1.example.com"}, []string{"vipd://lb1"}, []string{"lb1", "lb1.example.com"}},
		{"invalid DNS names skipped", []string{"*.example.com", "a b"}, nil, nil},
		{"other schemes skipped", nil, []string{"spiffe://lb1", "https://lb1"}, nil},
		{"URI with port, path, user or query skipped", nil,
			[]string{"vipd://lb1:1", "vipd://lb1/x", "vipd://u@lb1", "vipd://lb1?x", "vipd://lb1#x", "vipd:lb1"}, nil},
		{"case kept", []string{"LB1"}, nil, []string{"LB1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &x509.Certificate{DNSNames: tt.dns}
			for _, u := range tt.uris {
				c.URIs = append(c.URIs, mustURL(u))
			}
			if got := NodeNames(c); !slices.Equal(got, tt.want) {
				t.Errorf("NodeNames = %q, want %q", got, tt.want)
			}
		})
	}
	if NodeNames(nil) != nil {
		t.Error("NodeNames(nil) != nil")
	}
	if PeerNames(tls.ConnectionState{}) != nil {
		t.Error("PeerNames of an incomplete handshake != nil")
	}
	if PeerNames(tls.ConnectionState{HandshakeComplete: true}) != nil {
		t.Error("PeerNames without a peer certificate != nil")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
