"""The apps over a trace store: a Rerun recording of an episode, and the Gradio app."""
