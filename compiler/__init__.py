"""NetPath compiler: config (UCI, TOML, YAML) -> checked bundle."""
