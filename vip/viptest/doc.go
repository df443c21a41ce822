// Package viptest provides in-memory fakes of vip's dependencies for tests: a FakeKernel per node,
// bound to a shared FakeNetwork that fails the test the instant two nodes hold the same VIP (the
// invariant every multi-node test asserts), plus FakeLeadership and FakeHealth for unit tests of
// vip.Manager. Nothing here touches the real network.
package viptest
