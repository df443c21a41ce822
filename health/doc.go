// Package health decides which backends of the vipd proxy may receive new
// connections, and whether this node as a whole is fit to hold the VIP.
//
// It does what Envoy's health_checks and HAProxy's "check" do in front of a
// Kubernetes API: a Monitor probes every backend on its own schedule with a
// Checker (TCP connect, or an HTTP(S) GET of a path such as /readyz), feeds
// each result into a per-backend rise/fall Tracker so a single lost probe does
// not flap a backend, and publishes the healthy set as an atomic snapshot that
// the proxy reads on every connection without locking. The proxy reports its
// dial failures back (ReportDialFailure), so a dead backend is noticed between
// probes too.
//
// Node combines the Monitor with the state of the local listener into this
// node's own health, which the cluster uses to keep the VIP only on a healthy
// leader. Both Monitor and Node offer a Subscribe method returning a cap-1
// "something changed" channel; subscribers re-read the state they care about.
package health
