"""Built-in plugins: ordinary plugins, registered like third-party ones."""
