from kubeloop.cli import main

main()
