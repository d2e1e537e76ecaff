"""Training recipes of forge-hf. Each module is a plain procedure: config model + ``train(ctx, config)``."""
