// Package health decides which backends of the vipd proxy may receive new
// connections, and whether this node as a whole is fit to hold the VIP.
//
// It does what Envoy's health_checks and HAProxy's "check" do in front of a
// Kubernetes API: a Monitor probes every backend on its own schedule with a
// Checker (TCP connect, or an HTTP(S) GET of a path such as /readyz), feeds
// each result into a per-backend rise/fall Tracker so a single lost probe does
// not flap a backend, and publishes the backends that may take connections
// (healthy, not drained) as an atomic, weighted round-robin snapshot that the
// proxy reads on every connection without locking. The proxy reports its
// dial failures back (ReportDialFailure), so a dead backend is noticed between
// probes too. A check that fails for a local reason (this node out of file
// descriptors, buffers, memory or ports) is not counted against the backend.
//
// Everything can change while it runs, as a reload needs: Monitor.Update
// swaps the backend list and the check settings (unchanged backends keep
// their state), Monitor.SetDrain takes a backend out of service for
// maintenance, and Node follows any number of named frontends, added and
// removed at run time, combining each Monitor with the state of its listener
// into this node's own health, which the cluster uses to keep the VIP only on
// a healthy leader. Monitor and Node offer a Subscribe method returning a
// cap-1 "something changed" channel; subscribers re-read the state they care
// about.
//
// Metrics are registered once per agent (NewMetrics) and handed to each
// frontend's Monitor as a view (Metrics.Frontend) that labels its series.
package health
