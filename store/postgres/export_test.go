package postgres

// ParseMigrations exposes the migration file parser to the external tests.
var ParseMigrations = parseMigrations
