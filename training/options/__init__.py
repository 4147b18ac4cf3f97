"""The training commands' options: parsed and checked here, without torch, before a command imports it."""
