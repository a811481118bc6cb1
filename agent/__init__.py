"""NetPath agent: applies a bundle, tracks uplinks, swaps pre-rendered state variants."""
