package telemetry

// StatementNameForTest exposes statementName to the external tests.
var StatementNameForTest = statementName
