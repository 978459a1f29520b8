"""The store-staff pages under ``/store/`` (see ``orders.urls``): one module per area."""
