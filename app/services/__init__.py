"""Use cases: generation, worlds, prompts. No Gradio imports here."""
