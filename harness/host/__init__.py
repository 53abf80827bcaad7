"""The plugin host: finding and loading plugins, and the name -> component tables."""
