// Package revguardtest holds the conformance suites of Revenue Guard's root interfaces
// and the tools they use: every backend package runs the suite of each interface it
// implements, so that the embedded and the distributed implementations are held to
// the same rules (TestInventory, TestLedger, TestSessions).
//
// Besides the rule-by-rule subtests, the inventory suite records concurrent
// histories ([History]) and checks them for linearizability with porcupine against a
// sequential model of one SKU, and stresses implementations with thousands of
// goroutines ([Stress]), checking the invariants afterwards.
package revguardtest
