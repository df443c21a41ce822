// Package examples holds vipd's example configurations (*.yaml, one per deployment shape) and the test that
// runs `vipd validate` on each of them, exactly as written, inside a network namespace that has the example's
// addresses. The package has no code of its own.
package examples
