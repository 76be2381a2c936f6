"""SRFlow Studio core package."""
