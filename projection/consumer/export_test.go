package consumer

// ConfigOf returns the configuration c runs with, defaults filled in.
func ConfigOf(c *Consumer) Config { return c.cfg }
