"""Built-in autoencoders plugin."""
