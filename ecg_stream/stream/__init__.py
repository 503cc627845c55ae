"""The asyncio edge: paced replay, MQTT publisher, embedded broker, subscriber, live runs."""
