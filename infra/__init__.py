"""How ModelDB's parts are started: settings, CLI, local launcher."""
