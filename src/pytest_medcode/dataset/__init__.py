"""The dataset: which codes and documents become cases, reworded how, asked with which prompt."""
