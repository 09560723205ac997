"""The queue worker: applies feedback batches from RabbitMQ to MongoDB and answers them."""
