//go:build !race

package main

// raceEnabled reports whether the member was built with -race.
const raceEnabled = false
