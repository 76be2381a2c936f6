"""SRFlow Studio application: the editing session and the Gradio UI."""
