"""Colab's message errors: `MessageError` is what a declined Drive prompt raises."""


class MessageError(RuntimeError):
    pass
