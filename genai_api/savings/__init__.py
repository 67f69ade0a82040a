"""The savings: what each answer cost or saved (`accounting`), token counts (`usage`,
`tokenizer`), exact money (`money`), and where the counters live (`backends`, `redis`)."""
