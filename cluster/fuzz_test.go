package cluster

import (
	"bytes"
	"encoding/base64"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// Fuzz targets for every parser of bytes from the network or the operator. `go test` runs their seed
// corpora (testdata/fuzz and the f.Add seeds); `go test -fuzz FuzzX -fuzztime 30s ./cluster/` explores.

// FuzzDecodeMeta: gossiped metadata never panics the decoder, and what it accepts re-encodes to the same
// value and passes its own checks.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"h":true,"r":"10.0.0.1:7947","v":"1.0","be":3,"hs":true,"cid":"00ff","sec":"key","kf":["0a1b2c3d"],"kp":"0a1b2c3d"}`))
	f.Add([]byte(`{"r":"[::1]:7947","p":-1}`))
	f.Add([]byte(`{"v":"\u001b[31m"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if err := m.check(); err != nil {
			t.Fatalf("accepted meta fails its check: %v", err)
		}
		enc, err := encodeMeta(m)
		if err != nil {
			return // valid but too large to gossip: never sent by a vipd node
		}
		again, err := decodeMeta(enc)
		if err != nil || !reflect.DeepEqual(normMeta(again), normMeta(m)) {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", m, enc, again, err)
		}
	})
}

// normMeta treats an empty and a nil fingerprint list alike (omitempty).
func normMeta(m wireMeta) wireMeta {
	if len(m.KeyFPs) == 0 {
		m.KeyFPs = nil
	}
	return m
}

func keyringCmd(t testing.TB, st keyringState) []byte {
	b, err := encodeKeyringCmd(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzFSMApply: no log entry panics Apply; a refused one is an error and changes nothing; an accepted
// keyring is valid.
func FuzzFSMApply(f *testing.F) {
	k := bytes.Repeat([]byte{7}, 32)
	f.Add(append([]byte{cmdSetClusterID}, "00112233445566778899aabbccddeeff"...), uint64(3))
	f.Add(keyringCmd(f, keyringState{Keys: [][]byte{k}, Primary: k}), uint64(9))
	f.Add([]byte{cmdKeyring, '{', '}'}, uint64(1))
	f.Add([]byte{cmdKeyring}, uint64(1))
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{99}, uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, index uint64) {
		var applied []keyringState
		fs := newFSM(nil, func(st keyringState) { applied = append(applied, st) })
		res := fs.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
		if err, ok := res.(error); ok {
			if fs.clusterID() != "" || fs.keyring != nil || len(applied) != 0 {
				t.Fatalf("refused entry (%v) changed the state", err)
			}
			return
		}
		for _, st := range applied {
			if err := st.validate(); err != nil || st.Index != index {
				t.Fatalf("accepted an invalid keyring %+v: %v", st, err)
			}
		}
		if id := fs.clusterID(); id != "" {
			if err := checkClusterID(id); err != nil {
				t.Fatalf("accepted cluster ID %q: %v", id, err)
			}
		}
	})
}

// FuzzFSMRestore: no snapshot panics Restore; a refused one changes nothing.
func FuzzFSMRestore(f *testing.F) {
	k := bytes.Repeat([]byte{7}, 16)
	f.Add([]byte(`{"cluster_id":"00ff","keyring":{"keys":["` + base64.StdEncoding.EncodeToString(k) + `"],"primary":"` +
		base64.StdEncoding.EncodeToString(k) + `","index":4}}`))
	f.Add([]byte(`{"cluster_id":"not hex"}`))
	f.Add([]byte(`{"keyring":{"keys":[],"primary":null}}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := newFSM(nil, nil)
		fs.set("aa")
		if err := fs.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			if fs.clusterID() != "aa" || fs.keyring != nil {
				t.Fatalf("refused snapshot (%v) changed the state", err)
			}
			return
		}
		if fs.keyring != nil {
			if err := fs.keyring.validate(); err != nil {
				t.Fatalf("restored an invalid keyring: %v", err)
			}
		}
	})
}

// FuzzParsePeer: `vipd recover -peer` values never panic, and what is accepted is a valid one-peer set.
func FuzzParsePeer(f *testing.F) {
	for _, s := range []string{"lb1=10.0.0.11:7947", "lb1=[fe80::1%eth0]:7947", "=1.2.3.4:1", "a=b=c", "lb1=10.0.0.11", "\x1b=1.1.1.1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeer(s)
		if err != nil {
			return
		}
		if err := validatePeers([]Peer{p}); err != nil || !ValidNodeName(p.Name) {
			t.Fatalf("ParsePeer(%q) accepted %+v, which validation refuses: %v", s, p, err)
		}
	})
}

// FuzzParseKey: key text never panics the parser; an accepted key is 16, 24 or 32 bytes and is what the
// text encodes.
func FuzzParseKey(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n")
	f.Add("  " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)))
	f.Add("not base64")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if checkKeyLen(k) != nil {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
		if again, err := ParseKey(base64.StdEncoding.EncodeToString(k)); err != nil || !bytes.Equal(again, k) {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}

// FuzzKeyringFile: the persisted keyring never panics its parser; what is accepted is valid.
func FuzzKeyringFile(f *testing.F) {
	k := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 24))
	f.Add([]byte(`{"keys":["` + k + `"],"primary":"` + k + `","index":7}`))
	f.Add([]byte(`{"keys":["` + k + `","` + k + `"],"primary":"` + k + `"}`))
	f.Add([]byte(`{"keys":[],"extra":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseKeyringFile(b)
		if err != nil {
			return
		}
		if err := st.validate(); err != nil {
			t.Fatalf("accepted keyring fails validation: %v", err)
		}
	})
}

// FuzzReadHello: a stranger's first bytes on the Raft port never panic the handshake parser, which never
// reads beyond the message it accepts.
func FuzzReadHello(f *testing.F) {
	f.Add(makeHello("n1", [][]byte{bytes.Repeat([]byte{1}, 16)}, make([]byte, ekmLen), roleClient).marshal())
	f.Add([]byte{0, 0x85, 0xa1})
	f.Add([]byte("VPD1\x02n1\x09"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := readHello(r)
		if err != nil {
			return
		}
		if !ValidNodeName(h.name) || len(h.proofs) == 0 || len(h.proofs) > maxKeys {
			t.Fatalf("accepted hello %+v", h)
		}
		if used := len(b) - r.Len(); used != len(h.marshal()) {
			t.Fatalf("read %d bytes for a %d-byte hello", used, len(h.marshal()))
		}
	})
}
