"""The request path: route -> query schema -> read -> polling decision -> payload -> envelope."""
