def main():
    print("mapgen")
