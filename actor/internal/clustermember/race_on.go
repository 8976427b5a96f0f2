//go:build race

package main

// raceEnabled reports whether the member was built with -race (GET
// /members says so, for the test that runs members under the detector).
const raceEnabled = true
