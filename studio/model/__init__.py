"""The model stage: the PerTok tokenizer, bases (hub, folder, pocket) and adapters, the lean decoder, sampling, precision."""
