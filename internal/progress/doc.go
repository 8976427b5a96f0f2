// Package progress draws progress bars for the command-line tools on a
// terminal stream (standard error): one line, redrawn in place with a
// carriage return and at most every MinInterval, finished with a newline.
//
// # Guarantees
//
//   - Update is cheap to call often: it redraws only when MinInterval has
//     passed since the last redraw, or when the work is complete.
//   - The first Update and the completing one are always drawn, so a reader
//     of a captured stream sees where the work started and that it ended.
//   - A Bar is safe for concurrent use.
//
// # Failures
//
// Write errors of the underlying writer are ignored: progress is a
// courtesy, never a reason to fail the work it reports on.
package progress
