"""Names every topic module of the chatbot's services shares: the app and the model tasks it trains."""

APP = "customer_service"
INTENT_TASK = "intent"
RETRIEVAL_TASK = "retrieval"
