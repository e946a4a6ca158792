"""Target presets and toolchains (imported as ``mnv3compile.targets``)."""
