"""The finance monitor's business logic, one module per topic: documents, feeds, entities, trends, alerts."""
