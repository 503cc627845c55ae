"""The only importers of aiomqtt and amqtt: transport, publisher, subscriber, embedded broker."""
