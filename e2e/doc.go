// Package e2e holds end-to-end tests that run real relaymesh processes on
// loopback and drive them with real clients: the official LeanCloud JS SDK
// in Node (conformance) and relaymesh's Go SDK.
package e2e
