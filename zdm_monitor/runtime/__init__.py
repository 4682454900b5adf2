"""What gunicorn loads: its settings, the WSGI entry and the JSON logs."""
