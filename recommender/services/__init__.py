"""The recommender's writes and business rules: catalogue, behaviour, training, serving (one module each)."""
